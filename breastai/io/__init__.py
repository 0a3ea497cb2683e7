"""Readers and writers: DICOM studies, NIfTI phases and masks, DICOM-SEG."""
