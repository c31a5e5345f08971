"""The city centre's side of the vehicle's links: the tunnel's far end and the probe responder."""
