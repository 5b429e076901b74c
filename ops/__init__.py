"""The operator's page: upload a file, see recent attachments and the cache's vital signs."""
