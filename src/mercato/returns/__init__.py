"""Returns: return requests (RMA), approval, receiving (restock or write-off) and the refund."""
