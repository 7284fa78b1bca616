# Read by `flask` commands (python-dotenv). Public settings only: secrets go
# in .env (copy .env.example), which git ignores.
FLASK_APP={{ cookiecutter.project_slug }}
# No FLASK_DEBUG here: debug mode serves Werkzeug's interactive debugger on
# any error and opens the jobs API to anyone when no key is set, so it is
# asked for each time, on your own machine only: `flask run --debug`.
