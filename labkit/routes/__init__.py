"""Route families: each module adds one concept's routes to the lab app (`setup(app)`) and describes
them (`OPENAPI_PATHS`, and `ASYNCAPI_CHANNELS` for push transports). They reach the network only
through `labkit.server` (the serving path) and write to streaming sockets only through
`labkit.streaming`."""
