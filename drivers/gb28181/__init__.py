"""GB/T 28181 platform side: SIP signalling, digest auth, MANSCDP bodies, PTZ codes."""
