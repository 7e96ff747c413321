"""citypipe.training"""
