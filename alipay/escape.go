package alipay

import (
	"net/url"
	"strings"
)

// queryEscape form-encodes s byte for byte as the official PHP SDK's urlencode (AopClient's
// pageExecute, and http_build_query in sdkExecute) and the Java SDK's URLEncoder: space becomes
// '+', A-Za-z0-9 and "-_." stay, every other byte is %XX in upper-case hex, '~' included (%7E).
// url.QueryEscape differs only in leaving '~' raw. ('*' is %2A as in PHP; Java leaves it raw.)
func queryEscape(s string) string {
	e := url.QueryEscape(s)
	if strings.IndexByte(e, '~') < 0 {
		return e
	}
	return strings.ReplaceAll(e, "~", "%7E")
}
