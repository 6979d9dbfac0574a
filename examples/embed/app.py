"""
A Twisted web site of your own with playbalancer mounted at /app: static
files at /static, your own page at /, and /app/... proxied to the members
of app.toml's balancer.

Run it (with demo members on 9999 and 9998, e.g.
``python -m playbalancer.demo serve --name app1 --port 9999``)::

    twistd -n -y examples/embed/app.py

then open http://127.0.0.1:8081/app/ and http://127.0.0.1:8081/static/.
``EMBED_CONFIG`` and ``EMBED_PORT`` in the environment choose another
config file and port.
"""

import os

from twisted.application import internet, service
from twisted.internet import reactor
from twisted.web import resource, server, static

from playbalancer.embed import loadBalancers
from playbalancer.resource import ReverseProxyResource

HERE = os.path.dirname(os.path.abspath(__file__))


class Home(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"My own page. The app is at /app/, static files at /static/.\n"


def makeSite(balancers, public):
    """
    The site: our page at /, static files, and the proxy at /app.
    """
    root = resource.Resource()
    root.putChild(b"", Home())
    root.putChild(b"static", static.File(public))
    root.putChild(b"app", ReverseProxyResource(balancers["mycluster"]))
    return server.Site(root)


application = service.Application("embed-example")
config = os.environ.get("EMBED_CONFIG", os.path.join(HERE, "app.toml"))
port = int(os.environ.get("EMBED_PORT", "8081"))
balancers = loadBalancers(config, reactor)
balancers.setServiceParent(application)
site = makeSite(balancers, os.path.join(HERE, "public"))
internet.TCPServer(port, site, interface="127.0.0.1").setServiceParent(application)
