"""What the transcription service is made of, free of any HTTP framework: API keys, the durable job
store, and the worker that batches speech pieces of concurrent requests onto one model (with the
version slot that swaps models in while requests finish on the one they started with)."""
