"""Training, evaluation and export (torch + timm). Depends on `vision`, never the reverse."""
