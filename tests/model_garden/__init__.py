"""Model Garden's classification decoder, reimplemented for the tests (see classification_decoder.py)."""
