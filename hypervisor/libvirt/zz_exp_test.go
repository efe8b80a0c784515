package libvirt
import (
  "testing"
  "time"
  lv "libvirt.org/go/libvirt"
)
func TestX(t *testing.T) {
  lv.EventRegisterDefaultImpl()
  go func(){ for { lv.EventRunDefaultImpl() } }()
  c, err := lv.NewConnect("test:///default")
  if err != nil { t.Fatal(err) }
  id, err := c.DomainEventLifecycleRegister(nil, func(c *lv.Connect, d *lv.Domain, e *lv.DomainEventLifecycle){ n,_:=d.GetName(); t.Logf("event %s %v %v", n, e.Event, e.Detail)})
  t.Log("reg", id, err)
  xml := `<domain type='test'><name>x1</name><memory>65536</memory><os><type>hvm</type><kernel>/tmp/k</kernel></os><metadata><jitsu:unikernel xmlns:jitsu="https://jitsu-unikernel.github.io/xmlns/1" name="x1"/></metadata><on_crash>destroy</on_crash></domain>`
  d, err := c.DomainCreateXML(xml, 0)
  if err != nil { t.Fatal(err) }
  m, err := d.GetMetadata(lv.DOMAIN_METADATA_ELEMENT, "https://jitsu-unikernel.github.io/xmlns/1", lv.DOMAIN_AFFECT_LIVE)
  t.Log("meta", m, err)
  t.Log("suspend", d.Suspend())
  t.Log("resume", d.Resume())
  t.Log("managedsave transient", d.ManagedSave(0))
  t.Log("destroy", d.Destroy())
  d2, err := c.DomainDefineXML(xml)
  t.Log("define", err)
  t.Log("create", d2.Create())
  t.Log("shutdown", d2.Shutdown())
  s,_,_ := d2.GetState(); t.Log("state after shutdown", s)
  t.Log("create", d2.Create())
  t.Log("managedsave", d2.ManagedSave(0))
  h, err := d2.HasManagedSaveImage(0); t.Log("hasms", h, err)
  s,_,_ = d2.GetState(); t.Log("state", s)
  t.Log("create", d2.Create())
  s,_,_ = d2.GetState(); t.Log("state", s)
  st, err := d2.InterfaceStats("vnet0"); t.Log(st, err)
  x, _ := d2.GetXMLDesc(0); t.Log(x)
  time.Sleep(200*time.Millisecond)
}
