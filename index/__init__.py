"""Index package: FAISS index, catalog and builds."""
