// Command proxyget is the Go client of the e2e proxy matrix (TestClientMatrix): it fetches one
// URL with net/http the way a Go program left at its defaults does, taking the proxy from the
// environment (http.ProxyFromEnvironment: HTTP_PROXY, HTTPS_PROXY, NO_PROXY) and the CA bundle
// from SSL_CERT_FILE, and prints the response body. A status other than 200 is an error.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: proxyget URL")
		os.Exit(2)
	}
	if err := get(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "proxyget: %v\n", err)
		os.Exit(1)
	}
}

func get(url string) error {
	c := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment},
		Timeout:   10 * time.Second,
	}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	_, err = io.Copy(os.Stdout, resp.Body)
	return err
}
