"""citypipe.evaluation"""
