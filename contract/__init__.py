"""What both ends of the gRPC contract agree on beyond the generated messages: the error model
(domain, rich details, how much of a caller's input an error quotes) and the chat roles. The core
and the edge import it; it imports neither."""
