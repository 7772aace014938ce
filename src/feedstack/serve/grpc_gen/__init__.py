"""Generated gRPC stubs (proto/feedstack/v1/feed.proto); do not edit, regenerate."""
