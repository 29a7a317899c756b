package regroup

import (
	"maps"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	names := []string{"out_trade_no", "seller_id", "total_amount"}
	for _, tc := range []struct {
		name          string
		fields        map[string]string
		field, holder string
		found         bool
	}{
		{"Clean", map[string]string{"subject": "Tom & Jerry", "body": "1 = one", "passback_params": "a=1&b=2"}, "", "", false},
		{"ValueTakesAName", map[string]string{"subject": "Gift&out_trade_no=T2"}, "subject", "out_trade_no", true},
		{"FoldedField", map[string]string{"notify_type": "trade_status_sync&out_trade_no=T1&seller_id=2088"}, "notify_type", "out_trade_no", true},
		{"NameWithoutEquals", map[string]string{"subject": "a&out_trade_no"}, "", "", false},
		{"OtherName", map[string]string{"subject": "a&out_trade_no_x=1"}, "", "", false},
		{"NameHoldsAmpersand", map[string]string{"notify_time=1&out_trade_no=T1&subject": "Gift"}, "notify_time=1&out_trade_no=T1&subject", "", true},
		{"NameHoldsEquals", map[string]string{"a=b": "c"}, "a=b", "", true},
		{"SignIgnored", map[string]string{"sign": "abc&out_trade_no=x"}, "", "", false},
	} {
		field, holder, found := Find(names, maps.All(tc.fields))
		if field != tc.field || holder != tc.holder || found != tc.found {
			t.Errorf("%s: Find = %q, %q, %v; want %q, %q, %v", tc.name, field, holder, found, tc.field, tc.holder, tc.found)
		}
	}
	// The first of names that the value holds, in the order of names.
	if _, holder, _ := Find([]string{"seller_id", "out_trade_no"}, maps.All(map[string]string{"x": "&out_trade_no=1&seller_id=2"})); holder != "seller_id" {
		t.Errorf("holder %q, want seller_id (first of names)", holder)
	}
}

func TestDetail(t *testing.T) {
	if got, want := Detail("subject", "out_trade_no"), `verified, but subject holds "&out_trade_no=": the signature does not say where fields end, and this one may hold another field's text`; got != want {
		t.Errorf("Detail = %s", got)
	}
	if got := Detail(strings.Repeat("n", 100)+"=", ""); strings.Contains(got, strings.Repeat("n", 65)) || !strings.Contains(got, strings.Repeat("n", 64)) {
		t.Errorf("a long name is not cut to 64 bytes: %s", got)
	}
}
