"""The transcription service: an entry point above the library (``zhasr serve``), never imported by it."""
