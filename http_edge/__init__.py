"""The HTTP edge: transcodes HTTP/JSON (native REST and the OpenAI surface) to the gRPC core."""
