"""Documents for people and programs: Flower-shaped task and worker documents, status."""
