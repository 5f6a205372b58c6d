"""How good and how healthy a space is: kNN and linear probe against labels (evaluate), health
without labels (health), copy retrieval (copies), the label-free judge that compares encoders
(judge), pictures (plots). May import common, embedding and collections; never training."""
