"""citypipe.visualization"""
