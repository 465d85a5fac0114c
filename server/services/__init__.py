"""The gRPC servicers: thin translations between `switchboard.v1` messages and the domain."""
