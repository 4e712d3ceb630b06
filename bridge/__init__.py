"""SIP/RTP conference bridge: SIP stack, RTP media, numpy mixer and rooms."""
