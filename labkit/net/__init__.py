"""Network tools the lessons put between a client and the lab: the emulated link (netem), a plain TCP
proxy, the wire tap that shows every byte, and local TLS."""
