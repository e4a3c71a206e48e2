"""Fulfilment: allocation of paid orders to warehouses, picking and packing, shipments with
capture on shipment, carriers and tracking."""
