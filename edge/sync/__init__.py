"""The vehicle's state to the city centre over NATS JetStream: the servers, the streams
and the bus bridge (`edge run sync`)."""
