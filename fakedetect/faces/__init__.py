"""Faces in photos and videos: detection and cropping (detection), video frames (video) and building a
dataset of face crops (build)."""
