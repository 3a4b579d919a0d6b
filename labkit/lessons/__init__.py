"""The experiments each lesson calls, one module per topic. Each returns tidy frames or plain values
computed from real exchanges with a lab; the notebooks only call and show them.

| module | lesson |
|---|---|
| rest | 01 REST request-response |
| duplex | 02 WebSocket push (full duplex) |
| latency | 03 latency lab |
| scaling | 06 scaling out |
| reliability | 07 reliability |
| bank | 09 capstone bank |
"""
