"""`aif sim`: replay workload traces through the federation's policies (filled in by the simulator)."""

import typer

app = typer.Typer(help="Simulate workload traces through scheduling and placement policies.")
