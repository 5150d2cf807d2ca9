import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;

/**
 * ProxyGet is the JVM client of the e2e proxy matrix (TestClientMatrix). It takes its proxy only
 * from the standard system properties, as an application left at its defaults does:
 *
 *   ProxyGet urlconnection URL   HttpURLConnection (http.proxyHost, https.proxyHost)
 *   ProxyGet httpclient URL      java.net.http.HttpClient (the same properties; no SOCKS)
 *   ProxyGet socket HOST PORT    a plain Socket (socksProxyHost) speaking HTTP/1.0 by hand; the
 *                                address is left unresolved, so the proxy resolves HOST
 *
 * and prints the response body (socket: the whole response).
 */
public class ProxyGet {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "urlconnection" -> {
                HttpURLConnection c = (HttpURLConnection) new URL(args[1]).openConnection();
                c.setConnectTimeout(5000);
                c.setReadTimeout(5000);
                try (InputStream in = c.getInputStream()) {
                    System.out.print(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                }
            }
            case "httpclient" -> {
                HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
                HttpRequest req = HttpRequest.newBuilder(URI.create(args[1])).timeout(Duration.ofSeconds(10)).build();
                HttpResponse<String> resp = c.send(req, HttpResponse.BodyHandlers.ofString());
                if (resp.statusCode() != 200) {
                    throw new RuntimeException("status " + resp.statusCode());
                }
                System.out.print(resp.body());
            }
            case "socket" -> {
                try (Socket s = new Socket()) {
                    s.connect(InetSocketAddress.createUnresolved(args[1], Integer.parseInt(args[2])), 5000);
                    s.setSoTimeout(5000);
                    OutputStream out = s.getOutputStream();
                    out.write(("GET / HTTP/1.0\r\nHost: " + args[1] + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                    out.flush();
                    System.out.print(new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
                }
            }
            default -> throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }
}
