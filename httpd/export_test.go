package httpd

// LongPolls returns how many long-polls are waiting, for tests that must act only once a poll
// is really waiting.
func (s *Server) LongPolls() int {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	n := 0
	for _, chans := range s.waiters {
		n += len(chans)
	}
	return n
}

// ReadCallbackBody is readCallbackBody, for its test over a real socket.
var ReadCallbackBody = readCallbackBody
