"""Git: every git call, exact names, the person's checkout, repository locks, scans and what a plan tested."""
