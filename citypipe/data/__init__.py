"""citypipe.data"""
