"""Everything that pushes: the Hub's topics of sequence-numbered events, their Redis bridge for a
cluster, and the one owner of streaming sockets (WebSocket, SSE, long poll) that every route
family sends through."""
