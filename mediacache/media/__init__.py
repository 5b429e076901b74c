"""Media conversion: WhatsApp-ready voice notes and images, and probes, run in a child
process with a time limit."""
