"""What every model family shares, in one home each: metrics (one AUROC), bootstrap intervals, weight
initialization and the cells of result tables."""
