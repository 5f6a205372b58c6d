"""Everything that turns pixels into vectors, and the job that learns how.

Five subpackages, each importing only those listed before it:

    common       helpers any part may use: atomic writes, checksums, the CPU, torchrun's processes
    embedding    pixels -> L2-normalised h: decoding, backbones, runtimes (torch, ONNX), query views
    collections  folders and tar archives of images, the sample collection
    evaluation   how good and healthy a space is: kNN, probe, health, copy retrieval, the judge
    training     the SimCLR job: recipe, feeds, augmentation, loss, budget, checkpoints, the choice

`index/` and `app/` use common, embedding and collections only; the CLI alone starts training or
evaluation (tests/test_layers.py keeps it so).
"""
