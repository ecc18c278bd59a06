"""Typed, persisted watermarks for Apache Airflow triggers and sensors."""
