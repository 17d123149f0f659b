"""Protocol code without I/O: AT commands, SMS PDUs; bytes in, events out."""
