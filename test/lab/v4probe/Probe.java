// Probe is the JVM's IPv4-only client for the lab's runtime truth table: java.net.Socket to
// HOST:PORT (InetAddress.getByName inside), an HTTP/1.0 GET, the status line printed. Run as
// `java [-Djava.net.preferIPv4Stack=true] Probe.java HOST PORT`.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;

public class Probe {
    public static void main(String[] args) throws Exception {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(args[0], Integer.parseInt(args[1])), 5000);
            s.setSoTimeout(5000);
            OutputStream out = s.getOutputStream();
            out.write(("GET / HTTP/1.0\r\nHost: " + args[0] + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            BufferedReader in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.US_ASCII));
            System.out.println("peer=" + s.getInetAddress().getHostAddress() + ":" + s.getPort() + " " + in.readLine());
        }
    }
}
