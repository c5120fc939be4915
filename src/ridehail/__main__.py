from ridehail.cli import app

app(prog_name="ridehail")
