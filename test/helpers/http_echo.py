# A loopback HTTP server for the LuaSocket layer tests: GET answers
# "GET <path>", POST answers "POST <path> <body>".
import sys
from http.server import HTTPServer, BaseHTTPRequestHandler

class Echo(BaseHTTPRequestHandler):
    def reply(self, body):
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(('GET ' + self.path).encode())

    def do_POST(self):
        n = int(self.headers.get('Content-Length', '0'))
        self.reply(('POST ' + self.path + ' ').encode() + self.rfile.read(n))

    def log_message(self, *args):
        pass

HTTPServer(('127.0.0.1', int(sys.argv[1])), Echo).serve_forever()
