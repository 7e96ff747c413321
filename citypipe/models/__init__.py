"""citypipe.models"""
