"""Orders: the order state machine, its history, cancellation, customer and staff views."""
