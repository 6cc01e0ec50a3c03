"""What users say about the app's answers: the feedback store, its review and its export for the pipeline."""
