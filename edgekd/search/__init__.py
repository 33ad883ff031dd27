"""Student architecture search: candidates, training-free ranking, on-target latency, halving."""
