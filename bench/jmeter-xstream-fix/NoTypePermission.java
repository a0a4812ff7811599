// Debian 12 ships JMeter 2.13 with XStream 1.4.20, whose default security framework
// refuses every JMeter class ("ForbiddenClassException: ...ScriptWrapper"), so the
// packaged jmeter cannot load any test plan. bench/jmeter_check.py compiles this class and
// puts it ahead of xstream.jar on the classpath (JAVA_CLASSPATH) for a local check only:
// it lifts XStream's type allow-list, which is acceptable for a plan file we wrote ourselves.
package com.thoughtworks.xstream.security;
public class NoTypePermission implements TypePermission {
    public static final TypePermission NONE = new NoTypePermission();
    public boolean allows(Class type) { return true; }
    public int hashCode() { return 1; }
    public boolean equals(Object obj) { return obj != null && obj.getClass() == NoTypePermission.class; }
}
