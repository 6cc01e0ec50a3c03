"""What users say about the app's answers: the feedback store, its review and its export for the pipeline.

The names below are what the command line needs to describe the store before any command runs; they live here, with
nothing imported, so that `fish-classifier predict` never loads SQLAlchemy for them.
"""

URL_ENV = "FISH_FEEDBACK_URL"  # the environment variable that names the store, for the app and the CLI
DEFAULT_URL = "sqlite:///feedback/feedback.db"  # relative to the working directory
STATUSES = ("new", "accepted", "rejected")  # a record's review status, new until someone accepts or rejects it
