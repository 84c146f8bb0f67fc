//! OTLP tracing provider of the service chassis (gRPC or HTTP/protobuf).
