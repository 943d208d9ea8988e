"""The platform repository's files as typed, validated models (`models`, `repository`)."""
