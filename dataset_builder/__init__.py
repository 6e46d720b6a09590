"""Ko-CXR-QA dataset builder: English chest X-ray reports → `notes`, `translation` and `qa` configs."""
