"""Placement policies (pure) shared by the live broker and the simulator."""
