import click


@click.group()
def cli() -> None:
    """batchrun"""


def main() -> None:
    cli()
